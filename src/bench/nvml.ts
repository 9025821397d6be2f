/**
 * NVML's GPU utilisation for the bench: which GPU to read, whether it can be read (or why not, for
 * the report), and the sampler the runner calls at each tick. Used only for an engine on a GPU.
 */
import { type GpuUtilization, native } from '../native';
import type { NvmlStatus } from './results';
import type { GpuSampler } from './runner';

/**
 * The NVML index of the GPU the engine runs on: the first entry of CUDA_VISIBLE_DEVICES when it is a
 * number (CUDA's device 0, which MLX uses), else 0. NVML numbers GPUs in PCI bus order and CUDA
 * fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; on hosts of one GPU model the two agree.
 */
export function nvmlIndex(env: NodeJS.ProcessEnv = process.env): number {
  const first = env.CUDA_VISIBLE_DEVICES?.split(',')[0]?.trim() ?? '';
  return /^\d+$/.test(first) ? Number(first) : 0;
}

/** The addon's reading; an addon that cannot load or lacks gpuUtilization is a reason too. */
export function readGpu(index: number): GpuUtilization {
  try {
    const u = native().gpuUtilization(index) as GpuUtilization | undefined;
    return u ?? { available: false, reason: 'the addon returned no NVML reading' };
  } catch (err) {
    return { available: false, reason: `NVML could not be read: ${(err as Error).message}` };
  }
}

/**
 * Reads once: the status for the report and, when NVML answered, a sampler of the same GPU (NaN for
 * a reading that fails later).
 */
export function nvmlSampler(
  index: number = nvmlIndex(),
  read: (index: number) => GpuUtilization = readGpu,
): { status: NvmlStatus; sample?: GpuSampler } {
  const first = read(index);
  if (!first.available) return { status: { available: false, reason: first.reason } };
  return {
    status: { available: true, index: first.index, name: first.name },
    sample: () => {
      const u = read(index);
      return u.available ? u.gpuPct : Number.NaN;
    },
  };
}
