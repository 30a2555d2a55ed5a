"""The built-in local demo: an AWS emulator with two accounts, and a launcher."""
