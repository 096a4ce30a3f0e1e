"""What an inference engine actually executed, read back from the engine rather than assumed from its settings
(OpenVINO: its runtime graph and per-node counters); below both the harness and the compression pipeline, whose
export verification checks the same readings."""
