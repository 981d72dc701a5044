"""pullchat RPC service: the IDL's Send and Pull over JSON-over-HTTP, backed by Redis."""
