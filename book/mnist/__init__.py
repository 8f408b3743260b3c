"""Parts a and b: LeNet-5 and its depthwise-separable version, trained on MNIST (data, models,
training, significance, the learning-rate sweep, figures)."""
