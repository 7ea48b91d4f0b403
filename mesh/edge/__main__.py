from mesh.edge.app import main

main()
