from . import pause


def run(g, opts, pos):
    return pause.run(g, opts, pos, verb="resume")
