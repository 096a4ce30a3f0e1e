# The same fake Server SUT (2 workers x 10 ms = 200 samples/s), one full-length (600 s) PerformanceOnly run at a load.
import threading, time, queue, sys, os
import mlperf_loadgen as lg
q = queue.Queue()
def worker():
    while True:
        s = q.get()
        time.sleep(0.010)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])
for _ in range(2): threading.Thread(target=worker, daemon=True).start()
sut = lg.ConstructSUT(lambda samples: [q.put(s) for s in samples], lambda: None)
qsl = lg.ConstructQSL(1024, 1024, lambda x: None, lambda x: None)
settings = lg.TestSettings()
settings.scenario = lg.TestScenario.Server
settings.mode = lg.TestMode.PerformanceOnly
settings.server_target_qps = float(sys.argv[1])
settings.server_target_latency_ns = 130_000_000
settings.min_duration_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 600000
settings.min_query_count = 100
out = f"/tmp/fpp/full-{sys.argv[1]}"; os.makedirs(out, exist_ok=True)
log = lg.LogSettings(); log.log_output.outdir = out; log.log_output.copy_summary_to_stdout = False
lg.StartTestWithLogSettings(sut, qsl, settings, log)
