"""The pure-Python twin of the compiled core ``pyapalis._core``."""
