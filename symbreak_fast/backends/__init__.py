"""Backends: thin implementations of ``generate(request, out_flat)`` that mirror _spec."""
