"""First-party plugins that ship with the core; registered through the ``hercules`` entry points."""
