"""Two optimizers behind one: the generator's variables step with one, all others with the other.

DeBERTa-v3's recipes train the generator and the discriminator with separate optimizers
(`--decoupled_training True`, the original default): the generator minimises the MLM loss, the
discriminator rtd_lambda * RTD loss. Because replacements are sampled (no gradient) and GDES stops
the RTD gradient at the generator's embeddings, d(total)/d(generator) = d(mlm)/d(generator) and
d(total)/d(discriminator) = d(rtd_lambda * rtd)/d(discriminator): one backward pass of the total
loss gives both optimizers their own gradients, so Keras' ordinary train step serves on every
backend. With plain sharing ("es") the shared table is the generator's and receives both losses'
gradients, stepped by the generator's optimizer.

Keras hands an optimizer the model's trainable variables in one fixed order (at `build`, then at
every step), so the split is computed once at `build` as two lists of positions.
"""

import keras


class DecoupledOptimizer(keras.optimizers.Optimizer):
    """`generator_optimizer` steps the variables in `generator_variables`; `discriminator_optimizer`
    steps every other trainable variable (the discriminator's and the GDES delta)."""

    def __init__(self, generator_optimizer, discriminator_optimizer, generator_variables, name=None):
        super().__init__(learning_rate=0.0, name=name)
        for label, opt in (("generator_optimizer", generator_optimizer),
                           ("discriminator_optimizer", discriminator_optimizer)):
            if not isinstance(opt, keras.optimizers.Optimizer):
                raise TypeError(f"{label} must be a keras.optimizers.Optimizer instance, got {type(opt).__name__}")
        if generator_optimizer is discriminator_optimizer:
            raise ValueError("generator_optimizer and discriminator_optimizer must be two optimizer objects")
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self._generator_ids = {id(v) for v in generator_variables}

    def build(self, var_list):
        self._generator_positions = [i for i, v in enumerate(var_list) if id(v) in self._generator_ids]
        self._discriminator_positions = [i for i, v in enumerate(var_list) if id(v) not in self._generator_ids]
        self.generator_optimizer.build([var_list[i] for i in self._generator_positions])
        self.discriminator_optimizer.build([var_list[i] for i in self._discriminator_positions])
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.generator_optimizer.variables + self.discriminator_optimizer.variables

    def _split(self, values):
        return ([values[i] for i in self._generator_positions], [values[i] for i in self._discriminator_positions])

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
            self.built = True
        variables = trainable_variables if trainable_variables is not None else self._trainable_variables
        gen_grads, disc_grads = self._split(list(grads))
        gen_vars, disc_vars = self._split(list(variables))
        self.generator_optimizer.apply(gen_grads, gen_vars)
        self.discriminator_optimizer.apply(disc_grads, disc_vars)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        # optimizer_variables: ours, then the generator optimizer's, then the discriminator's.
        own = len(self._variables)
        gen_count = len(self.generator_optimizer.variables)
        gen_state = optimizer_variables[own:own + gen_count]
        disc_state = optimizer_variables[own + gen_count:]
        gen_grads, disc_grads = self._split(list(grads))
        gen_vars, disc_vars = self._split(list(trainable_variables))
        new_gen_vars, new_gen_state = self.generator_optimizer.stateless_apply(gen_state, gen_grads, gen_vars)
        new_disc_vars, new_disc_state = self.discriminator_optimizer.stateless_apply(disc_state, disc_grads, disc_vars)
        merged = list(trainable_variables)
        for i, value in zip(self._generator_positions, new_gen_vars):
            merged[i] = value
        for i, value in zip(self._discriminator_positions, new_disc_vars):
            merged[i] = value
        return merged, list(optimizer_variables[:own]) + list(new_gen_state) + list(new_disc_state)

    @property
    def iterations(self):
        return self.generator_optimizer.iterations

    @property
    def learning_rate(self):
        return self.generator_optimizer.learning_rate

    def finalize_variable_values(self, var_list):
        gen_vars, disc_vars = self._split(list(var_list))
        self.generator_optimizer.finalize_variable_values(gen_vars)
        self.discriminator_optimizer.finalize_variable_values(disc_vars)
