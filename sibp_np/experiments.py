"""Experiment commands (Table 1, Figures 2-5). Filled in by the experiments issue."""


def add_commands(sub):
    return sub
