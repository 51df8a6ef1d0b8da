// Hyper-V's VHDX, dynamically sized.
import { qemuImgFormat } from './qemu-img.js';

export const vhdx = qemuImgFormat('vhdx', ['.vhdx'], 'vhdx', 'subformat=dynamic');
