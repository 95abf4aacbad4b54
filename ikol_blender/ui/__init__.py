"""The interactive add-on: preferences, operators, the sidebar panels, and the tasks they tick."""
