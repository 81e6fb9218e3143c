"""prfeval's commands: one module per command, each with ``main(argv=None) -> int``."""
