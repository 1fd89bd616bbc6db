"""The command line: argparse over the settings table and one function per command."""
