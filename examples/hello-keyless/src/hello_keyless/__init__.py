"""A sample package for the keyless demo."""

__version__ = "1.0.0"


def main() -> None:
    print(f"hello from hello-keyless {__version__}, installed from a keyless index")
