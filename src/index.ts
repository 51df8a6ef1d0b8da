// The img2vm library: convert an image into a disk, or plan the conversion, with the same options as the CLI.
export { convert, planImage, STAGES, type ConvertHooks, type ConvertResult } from './convert.js';
export { plan } from './plan.js';
export {
  CONVERT_OPTIONS,
  ConvertOptionsSchema,
  parseConvertOptions,
  type ConvertOptions,
  type ConvertOptionsInput,
} from './core/options.js';
export type { ConversionPlan, ImageFacts, PlanStep, GuestFile, FileSystemPlan } from './core/plan.js';
export type { Img2vmEvent, EventSink } from './core/events.js';
export { Img2vmError, ExitCode } from './core/errors.js';
