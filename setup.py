# The metadata lives in setup.cfg; this shim keeps `pip install .` working on old pips.
from setuptools import setup

setup()
