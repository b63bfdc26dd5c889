// Module: a layer with named parameters (stable dotted names such as
// "blocks.3.attn.qkv.weight", which are also the checkpoint keys) and named children.
// Every layer takes one tensor and returns one tensor, so layers chain in a Sequential —
// the unit the pipeline partitions. One parameter may sit in two places (a tied embedding):
// it is listed once, under the first name, and moves between devices as one tensor.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

class Module {
  public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;  // parameters are registered by address
    Module& operator=(const Module&) = delete;

    virtual Tensor forward(const Tensor& x) = 0;
    Tensor operator()(const Tensor& x) { return forward(x); }
    // A short type name for reports ("Linear(768 -> 3072)").
    virtual std::string describe() const = 0;

    // All parameters of this module and its children, depth first, with dotted names; a
    // parameter registered in several places (share_parameter) appears once, under its first name.
    std::vector<std::pair<std::string, Tensor>> named_parameters() const;
    std::vector<Tensor> parameters() const;
    int64_t num_parameters() const;
    // Moves every parameter to `device` (they stay parameters; gradients are dropped). A shared
    // parameter stays shared.
    void to(Device device);
    // Converts every parameter to `dtype` (CPU only: float64 for gradient checks).
    void to(DType dtype);
    // Makes the parameter at dotted `name` (e.g. "head.weight") be `source` itself — the same
    // tensor and gradient slot — so that two layers use one parameter (tied embeddings). Throws
    // std::invalid_argument naming the parameter when there is none by that name or the shapes differ.
    void share_parameter(const std::string& name, const Tensor& source);
    // Whether a parameter by dotted `name` is registered here (shared ones included).
    bool has_parameter(const std::string& name) const;
    Device device() const;
    // Training mode (dropout active) or evaluation mode, recursively.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }

  protected:
    // Registers a member tensor as a parameter under `name` (gives it a gradient slot).
    void register_parameter(const std::string& name, Tensor* parameter);
    // Registers a child module under `name`; its parameters appear as "name.<param>".
    void register_module(const std::string& name, std::shared_ptr<Module> child);

  private:
    // Every registered slot, depth first, with its dotted name (a shared parameter once per place).
    void collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const;
    template <typename Convert>
    void convert_parameters(Convert convert);
    std::vector<std::pair<std::string, Tensor*>> parameters_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

}  // namespace mp::nn
