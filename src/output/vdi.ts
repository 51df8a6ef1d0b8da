// VirtualBox's VDI, dynamically allocated.
import { qemuImgFormat } from './qemu-img.js';

export const vdi = qemuImgFormat('vdi', ['.vdi'], 'vdi');
