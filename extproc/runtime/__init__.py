"""The processes: the worker serving Envoy's gRPC, the supervisor behind `extproc up` and
`serve`, config reload, the admin endpoint. The one package that wires the transport to
the pipeline; it may import every other package but the mock."""
