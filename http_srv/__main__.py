from http_srv.server import main

main()
