from tap_exactonline.tap import cli

cli()
