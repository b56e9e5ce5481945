"""Seconds per ZSKT outer iteration (1 generator + n_S student steps) on this machine.

    python bench/zskt_speed.py [--pairs=wrn-40-2:wrn-16-1,wrn-16-2:wrn-16-1] [--batch_size=128]
        [--n_student_steps=10] [--iterations=3] [--jit_compile] [--mixed_bfloat16]
        [--intra_threads=0] [--inter_threads=0] [--variant=original]
    python bench/zskt_speed.py --compare   # one subprocess per CPU-path option, one table

Random-weight teacher and student (10 classes, the teacher's default input: 32x32x3 for
WRNs, 32x32x1 for LeNets), the real ZeroShotTrainer and generator, beta 250 for WRN pairs
(attention transfer on), 0 otherwise. One warm-up iteration (tracing, and XLA
compilation with --jit_compile) is excluded; the figure is the median over --repeats of the
mean time of --iterations iterations, as wall-clock seconds and as CPU seconds of the
process (on a shared machine the CPU time is the steadier figure; with both cores free the
wall time approaches CPU time / 2). Thread counts and the dtype policy must be set before
TensorFlow starts, so each option set runs in its own process under --compare.
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_list("pairs", ["wrn-40-2:wrn-16-1", "wrn-16-2:wrn-16-1"], "teacher:student pairs.")
flags.DEFINE_integer("batch_size", 128, "Global batch.")
flags.DEFINE_integer("n_student_steps", 10, "Student steps per outer iteration.")
flags.DEFINE_integer("iterations", 3, "Timed iterations per repeat.")
flags.DEFINE_integer("repeats", 2, "Timed repeats (the median is reported).")
flags.DEFINE_enum("variant", "original", ("original", "modified"), "ZSKT variant.")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the train step.")
flags.DEFINE_boolean("mixed_bfloat16", False, "keras mixed_bfloat16 policy (AVX512_BF16/AMX).")
flags.DEFINE_integer("intra_threads", 0, "TF intra-op threads (0: TF default).")
flags.DEFINE_integer("inter_threads", 0, "TF inter-op threads (0: TF default).")
flags.DEFINE_boolean("compare", False, "Run the standard option sets, one process each.")
FLAGS = flags.FLAGS

OPTION_SETS = {  # --compare: label -> extra flags
    "baseline (TF defaults, float32, no XLA)": [],
    "intra 2 / inter 1 threads": ["--intra_threads=2", "--inter_threads=1"],
    "XLA jit_compile": ["--jit_compile"],
    "mixed_bfloat16": ["--mixed_bfloat16"],
    "mixed_bfloat16 + XLA": ["--mixed_bfloat16", "--jit_compile"],
    "mixed_bfloat16 + intra 2 / inter 1": ["--mixed_bfloat16", "--intra_threads=2",
                                           "--inter_threads=1"],
}


def _seconds_per_iteration(teacher_name: str, student_name: str) -> float:
    import keras

    from zskd_tf.models import registry
    from zskd_tf.zskt import generator as generator_lib
    from zskd_tf.zskt import trainer as zs
    from zskd_tf.zskt.config import ZeroShotConfig

    keras.utils.set_random_seed(0)
    wrns = all(registry.model_family(n) == "wrn" for n in (teacher_name, student_name))
    config = ZeroShotConfig(iterations=1000, n_student_steps=FLAGS.n_student_steps,
                            variant=FLAGS.variant, beta=250.0 if wrns else 0.0)
    shape = registry.default_input_shape(teacher_name)
    trainer = zs.ZeroShotTrainer(registry.build_model(teacher_name, input_shape=shape),
                                 registry.build_model(student_name, input_shape=shape),
                                 generator_lib.generator(shape), config)
    trainer.compile(*zs.make_optimizers(config), jit_compile=FLAGS.jit_compile)

    def noise(start, count):
        return zs.noise_dataset(0, start, start + count, FLAGS.batch_size, config.noise_draws,
                                100)

    trainer.fit(noise(0, 1), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)  # warm-up
    walls, cpus, start = [], [], 1
    for _ in range(FLAGS.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.fit(noise(start, FLAGS.iterations), epochs=1, steps_per_epoch=FLAGS.iterations,
                    verbose=0, shuffle=False)
        walls.append((time.perf_counter() - wall) / FLAGS.iterations)
        cpus.append((time.process_time() - cpu) / FLAGS.iterations)
        start += FLAGS.iterations
    return statistics.median(walls), statistics.median(cpus)


def _measure():
    import tensorflow as tf

    if FLAGS.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_threads)
    if FLAGS.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_threads)
    if FLAGS.mixed_bfloat16:
        import keras
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    for pair in FLAGS.pairs:
        teacher, student = pair.split(":")
        wall, cpu = _seconds_per_iteration(teacher, student)
        print(f"RESULT {teacher} -> {student}: {wall:.2f} s/iteration ({cpu:.2f} CPU s)",
              flush=True)


def _compare():
    print(f"ZSKT outer iteration, batch {FLAGS.batch_size}, n_S {FLAGS.n_student_steps}, "
          f"{FLAGS.variant} variant, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f} at start\n")
    print("| options | " + " | ".join(f"{p.replace(':', ' -> ')}: wall s/it (CPU s/it)"
                                     for p in FLAGS.pairs)
          + " |\n|---|" + "---|" * len(FLAGS.pairs))
    passed = [f"--pairs={','.join(FLAGS.pairs)}", f"--batch_size={FLAGS.batch_size}",
              f"--n_student_steps={FLAGS.n_student_steps}", f"--iterations={FLAGS.iterations}",
              f"--repeats={FLAGS.repeats}", f"--variant={FLAGS.variant}"]
    for label, extra in OPTION_SETS.items():
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *passed, *extra],
                              capture_output=True, text=True)
        figures = [line.split(": ")[-1].replace(" s/iteration", "")
                   for line in proc.stdout.splitlines() if line.startswith("RESULT")]
        if proc.returncode:
            figures = [f"failed: {proc.stderr.strip().splitlines()[-1][:80]}"]
        print(f"| {label} | " + " | ".join(figures) + " |", flush=True)


def main(_):
    _compare() if FLAGS.compare else _measure()


if __name__ == "__main__":
    app.run(main)
