"""cmdline: what every command line shares (one-line errors, SIGTERM as Terminated, stoppable children), and the
experiments' own command line (``python -m experiments``), which compression's no longer forwards to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_error_types_share_one_base_that_keeps_its_old_names():
    from cmdline.errors import UserError
    from compression.errors import CompressionError
    from harness.errors import HarnessError
    from squad.errors import DatasetError
    from squad.errors import UserError as SquadUserError

    assert SquadUserError is UserError and HarnessError is UserError
    assert issubclass(DatasetError, UserError) and issubclass(CompressionError, UserError)


def test_a_stopped_parent_kills_a_child_that_ignores_sigterm_after_its_grace(tmp_path):
    """SIGTERM is passed on; a child that does not exit within the grace period is killed (and reaped)."""
    child = f"""
import os, signal, time
signal.signal(signal.SIGTERM, lambda *_: open({str(tmp_path / 'got-sigterm')!r}, 'w').close())
open({str(tmp_path / 'child-pid')!r}, 'w').write(str(os.getpid()))
time.sleep(120)
"""
    parent = f"""
import signal, sys, time
from cmdline.children import run_child
from cmdline.signals import install_sigterm_handler
install_sigterm_handler()
started = time.monotonic()
try:
    run_child([sys.executable, "-c", {child!r}], stop_grace_s=1.0)
except KeyboardInterrupt as stop:
    print(type(stop).__name__, round(time.monotonic() - started))
    sys.exit(143)
"""
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while not (tmp_path / "child-pid").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # the child's handler is set before it writes its pid
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143 and stdout.startswith("Terminated")
    assert (tmp_path / "got-sigterm").is_file()
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "child-pid").read_text()), 0)


def test_the_experiments_have_their_own_command_line():
    """``python -m experiments`` lists both experiments and refuses an unknown option as argparse does; the
    compression command line (below the experiments) has no way to start them."""
    listed = subprocess.run([sys.executable, "-m", "experiments", "--help"], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert listed.returncode == 0 and "obs-vs-magnitude" in listed.stdout and "real-accuracy" in listed.stdout
    proc = subprocess.run([sys.executable, "-m", "experiments", "obs-vs-magnitude", "--no-such-option"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "python -m experiments: error: unrecognized arguments: --no-such-option" in proc.stderr
    compress = subprocess.run([sys.executable, "-m", "compression", "experiment", "obs-vs-magnitude"],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
    assert compress.returncode == 2 and "invalid choice: 'experiment'" in compress.stderr


@pytest.mark.parametrize("settled", [False, True], ids=["undeclared", "settled"])
def test_a_fork_after_parallel_tokenizing_prints_no_tokenizers_warning(settled):
    """``import openvino`` forks a process after the features were tokenized in parallel; undeclared, the tokenizers
    library warns about it on the console. Settled: silent, and the forked child tokenizes serially."""
    script = f"""
import os
from cmdline.children import settle_tokenizers_parallelism
if {settled}:
    settle_tokenizers_parallelism()
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
Tokenizer(WordPiece({{"[UNK]": 0, "a": 1}}, unk_token="[UNK]")).encode_batch([["a"]] * 5000, is_pretokenized=True)
pid = os.fork()
if pid == 0:
    os.write(1, ("child: " + str(os.environ.get("TOKENIZERS_PARALLELISM"))).encode())
    os._exit(0)
os.waitpid(pid, 0)
"""
    env = {key: value for key, value in os.environ.items() if key != "TOKENIZERS_PARALLELISM"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    if settled:
        assert "huggingface/tokenizers" not in proc.stderr and proc.stdout == "child: false"
    else:  # the warning this guards against, as the library prints it
        assert "The current process just got forked, after parallelism has already been used" in proc.stderr
