"""Starting and stopping the stack's processes: Redis, the RPC service, the front end."""
