"""mamori (守り): what does this host expose, and how do I close it?"""

__version__ = "0.1.0"
