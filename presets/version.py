"""The distribution's version (pyproject.toml's), exported as `keras_deberta.__version__` and
`keras_deepseek.__version__`; tests/test_transformers_api.py checks that the two agree."""

__version__ = "0.1.0"
