"""What the front end (http_srv) and the RPC service (rpc_srv) both speak.

Neither tier owns it and neither imports the other: chat and member rules
(chat.py), the RPC wire format, its limits and codes (wire.py), request ids
(request_ids.py), settings from the environment (envvars.py), log formats
(logconfig.py) and the Prometheus multiprocess helper (prom.py).
"""
