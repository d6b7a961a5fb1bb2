"""augment subpackage."""
