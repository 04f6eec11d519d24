"""A user package: a small residual CNN, trained by `psctl run examples/custom-module/resnet.yaml`."""
