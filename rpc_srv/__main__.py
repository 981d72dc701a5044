from rpc_srv.server import main

main()
