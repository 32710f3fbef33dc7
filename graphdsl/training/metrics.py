"""What training measures beside the loss."""

# Losses whose first argument predicts the target: accuracy can be measured for them.
CLASSIFIERS = {"softmax_ce": "argmax", "bce": "half", "bce_logits": "sign"}
