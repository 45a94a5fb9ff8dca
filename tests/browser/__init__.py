"""Browser tests of the embed, the plain form and the demo page."""
