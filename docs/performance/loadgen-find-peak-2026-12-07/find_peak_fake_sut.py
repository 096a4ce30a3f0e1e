# LoadGen FindPeakPerformance on a fake Server SUT of known capacity (2 workers x 10 ms per sample = 200/s).
import os, threading, time, queue, sys
import mlperf_loadgen as lg
q = queue.Queue()
def worker():
    while True:
        s = q.get()
        if s is None: return
        time.sleep(0.010)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])
threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
[t.start() for t in threads]
def issue(samples):
    for s in samples: q.put(s)
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda x: None, lambda x: None)
settings = lg.TestSettings()
settings.scenario = lg.TestScenario.Server
settings.mode = lg.TestMode.FindPeakPerformance
settings.server_target_qps = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
settings.server_target_latency_ns = 130_000_000
settings.min_duration_ms = 5000
settings.min_query_count = 100
os.makedirs("/tmp/fpp", exist_ok=True)
log = lg.LogSettings(); log.log_output.outdir = "/tmp/fpp"; log.log_output.copy_summary_to_stdout = False
t = time.time()
lg.StartTestWithLogSettings(sut, qsl, settings, log)
print("wall s", round(time.time() - t, 1))
