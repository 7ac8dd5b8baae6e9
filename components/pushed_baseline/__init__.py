"""TFX component that hands the newest model version in the serving directory on as the evaluation baseline."""
