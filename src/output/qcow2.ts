// qcow2, the QEMU/KVM native format; --compress makes the clusters zlib-compressed.
import { qemuImgFormat } from './qemu-img.js';

export const qcow2 = qemuImgFormat('qcow2', ['.qcow2'], 'qcow2', undefined, true);
