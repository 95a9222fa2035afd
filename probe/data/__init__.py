"""Data files shipped inside the probe package: the default catalogue.

Read through `importlib.resources`, never through a path relative to a
checkout: an installed probe (a wheel on a Raspberry Pi) has no checkout.
"""
