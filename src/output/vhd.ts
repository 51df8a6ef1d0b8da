// The older VHD (qemu-img calls it vpc); force_size keeps the exact virtual size instead of CHS rounding.
import { qemuImgFormat } from './qemu-img.js';

export const vhd = qemuImgFormat('vhd', ['.vhd'], 'vpc', 'subformat=dynamic,force_size=on');
