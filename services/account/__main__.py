from services.account.app import main

main()
