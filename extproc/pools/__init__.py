"""Self-hosted model pools: what the gateway knows of each replica of a pool provider
(config/pools.py) and how it picks one per call.

  metrics.py  reading a replica's /metrics (vLLM's names, or another server kind's)
  prefix.py   which prompt prefixes each replica has seen (hashed blocks, LRU per replica)
  signals.py  each worker's scrape loop (one asyncio task per pool, off the request path)
  picker.py   the score per replica and the ordered pick Envoy follows
  homes.py    each conversation's latest replica, shared by the workers (a mapped file)
  kube_watch.py  a pool's replicas from a Kubernetes Service's EndpointSlices (watched)
  registry.py each worker's signals per pool provider, started by its first call

It imports the config and the standard library only: no stage, dialect, transport or
store (the stage stages/pool_pick.py calls it with the prompt's texts already read).
"""
