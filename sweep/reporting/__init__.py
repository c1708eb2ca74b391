"""Rendering results: the tables and texts the fronts print (output) and the HTML report with its plots."""
