"""Data files shipped inside the probe package: the default catalogue, the
ASNs whose network kind is known (the link type's last hint).

Found beside this module, never through a path relative to a checkout: an
installed probe (a wheel on a Raspberry Pi) has no checkout. A wheel installs
package data as plain files, so the path is read directly: importlib.resources
would add 10 ms to every quick command (`services`, `status`), and this module
imports nothing heavy so that they can name the file without loading the
catalogue's models.
"""

from pathlib import Path

CATALOGUE = Path(__file__).resolve().with_name("catalogue.yaml")
UPSTREAM_ASNS = Path(__file__).resolve().with_name("upstream_asns.yaml")
