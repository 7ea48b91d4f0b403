from services.risk.app import main

main()
