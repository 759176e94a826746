"""A small stand-in for `func start` (Azure Functions Core Tools), for machines without it.

Dev tooling only: .funcignore keeps it out of the deployment. It loads each function folder the way the
Python worker does and serves them at the same local URLs; see devhost/__main__.py.
"""
