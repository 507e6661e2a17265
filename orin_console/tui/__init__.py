"""The Textual console (tier map, gauges, catalog, chat). Talks to the core's manager only."""
