"""envfactory.prompts"""
