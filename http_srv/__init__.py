"""pullchat HTTP front end: the public API, forwarded to the RPC service."""
