from harness.cli import main

if __name__ == "__main__":  # not when a spawned process (the W&B writers) imports it
    main()
