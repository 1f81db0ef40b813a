"""afterkernel inside your own Keras script: kernel tracking and linearization.

Run: python examples/keras_extension.py   (about 20 s on 2 CPU cores)
The same code is the README's "Using afterkernel from your own Keras code"
section; tests/readme_example_test.py checks they agree and runs it.
"""
import keras
import numpy as np

import afterkernel as ak

task = ak.data.load_binary_task('digits', plus_class=8, minus_class=3)
x, y = task.x_train, task.y_train

# Your own model: any Keras model whose last layer is a Dense with one output.
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input(x.shape[1:]),
    keras.layers.Flatten(),
    keras.layers.Dense(64, activation='relu'),
    keras.layers.Dense(1),
])
loss = keras.losses.BinaryCrossentropy(from_logits=True)
model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)

# Its first-order Taylor model around the initial weights theta_0, taken
# before training (a copy: `model` itself keeps training normally).
linear = ak.linearize.linearize(model)

# Kernel metrics at epochs 0 (the FNTK), 1 and 5 on a probe set. Put it
# BEFORE keras.callbacks.TensorBoard(log_dir) to get the metrics there too.
tracker = ak.callbacks.KernelMetricsCallback(
    x[:100], y[:100], task.x_test[:100], task.y_test[:100], epochs=[0, 1, 5])
history = model.fit(x, y, epochs=5, batch_size=32, verbose=0,
                    callbacks=[tracker])
print('SVM test error, FNTK:        ', tracker.records[0]['kernel_svm_error'])
print('SVM test error, after kernel:', history.history['kernel_svm_error'][-1])
print('kernel distance from epoch 0:',
      history.history['kernel_distance_from_init'][-1])

# Train the linearization the same way; it never forms a Jacobian.
linear.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
linear.fit(x, y, epochs=5, batch_size=32, verbose=0)
for name, m in (('network', model), ('linearized', linear)):
  logits = keras.ops.convert_to_numpy(m(task.x_test))[:, 0]
  print(f'{name} test error:', np.mean((logits > 0) != task.y_test))

# Multi-output Jacobians and kernels: (n, L, P), traced (n, n) or full.
ten_way = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
jac = ak.jacobians.per_example_jacobians(ten_way, x[:8])       # (8, 10, 650)
ntk = ak.jacobians.jacobian_gram(ten_way, x[:8], kind='trace')  # (8, 8)
full = ak.jacobians.jacobian_gram(ten_way, x[:8], kind='full')  # (80, 80)
print(jac.shape, ntk.shape, full.shape)
