"""The scikit-learn estimators of skcds (thin layers over :mod:`skcds._core`)."""
