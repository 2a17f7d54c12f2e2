"""One module per ``metasignal`` command; :mod:`metasignal.trainer.cli` wires the parser.

Each module imports its heavy dependencies inside its command, so starting one command
never pays for another's (``fit`` does not load the scorer, ``scorer`` does not load
scikit-learn).
"""
