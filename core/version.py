"""The package's version, in a module of its own so that any part of lossaudit can read it without importing the
package's public face."""

__version__ = "0.2.0"
