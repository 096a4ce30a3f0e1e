"""Plot helpers shared by the bench reports (the suite's, the projections', the results at a glance)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (reports run on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return str(path)


def finish_plot(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_size: float | None = None) -> str:
    """Label a one-axes line plot, add its legend and save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return save_plot(fig, path)
