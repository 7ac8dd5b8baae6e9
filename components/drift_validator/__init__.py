"""TFX component: ExampleValidator's schema check plus drift of the acquisition features from the served model's
training data."""
