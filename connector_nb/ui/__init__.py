"""Notebook UI: widgets (ipywidgets, lazily imported) and HTML/text reprs that need no widgets."""
